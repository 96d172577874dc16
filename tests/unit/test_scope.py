"""What an approval covers (pure): subsets reuse, anything new asks again; alert updates add targets."""

from waguard.playbook.scope import Action, Scope, actions_from, covered_by
from waguard.playbook.updates import merge_targets

LOGIN = Action("delete_template", "login_code/en_US/5000000004")
SALE = Action("delete_template", "spring_sale/en_US/5000000005")
NUMBER = Action("deregister", "4000000001")


def test_a_plan_is_covered_only_by_an_approval_that_named_all_of_it() -> None:
    approved = actions_from(Scope("s", (LOGIN, NUMBER)).stored())
    assert covered_by((LOGIN,), approved)
    assert covered_by((), approved)
    assert not covered_by((LOGIN, SALE), approved)
    assert not covered_by((Action("deregister", "4000000002"),), approved)
    assert not covered_by((LOGIN,), actions_from([]))   # an approval of nothing covers nothing


def test_stored_actions_round_trip_sorted_and_deduplicated() -> None:
    scope = Scope("s", (SALE, LOGIN, SALE))
    assert scope.stored() == [LOGIN.as_list(), SALE.as_list()]
    assert actions_from(scope.stored()) == {LOGIN, SALE}
    assert actions_from([["only-one"], [1, 2], ["deregister", "4000000001"]]) == {NUMBER}


def test_an_update_adds_targets_but_an_empty_filter_stays_unfiltered() -> None:
    current = {"template_names": ["order_update"], "deregister_numbers": [], "phone_number_ids": []}
    merged = merge_targets(current, {"template_names": ["spring_sale", "order_update"], "waba_id": "1",
                                     "deregister_numbers": ["4000000001"], "phone_number_ids": ["4000000002"]},
                           frozenset({"template_names", "phone_number_ids"}))
    assert merged == {"template_names": ["order_update", "spring_sale"], "deregister_numbers": ["4000000001"],
                      "phone_number_ids": []}
