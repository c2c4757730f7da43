"""Before deploying on the user's own yagna: resolve images through the registry
(images.py), check the node is ready (checks.py, `golem-deploy doctor`), and look at the
market without negotiating (market.py; plan.py prices what it sees, `golem-deploy plan`).

Between the CLI/supervisor and the engine/yagna client: it uses the engine's demand
builder and pricing, never its negotiation, so looking cannot sign or pay for anything.
"""
