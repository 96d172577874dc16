"""Slack: Block Kit messages (blocks), request signing (signing), the Web API client (client) and the
simulator drills and tests run against (simulator, sim_state). Import from the submodules; this
package re-exports nothing so that importing the pure parts does not load slack_sdk and aiohttp."""
