"""ollama-top's screens over the node table: a node's details, the test prompt, the jobs and models views,
and the key list. Each gets what it needs from the app (`fleet.Fleet`) and posts messages up
(`fleet.ProblemReported`, `fleet.PollNow`); none imports the app (tests/test_layout.py).
"""
