"""Two-person confirmation of candidates and the reviewers' web app (`facestream review`).

A candidate from `matches` waits for review; it becomes a confirmed alert on
`alerts.confirmed` only after two different reviewers confirm it, and any rejection closes
it. The rules are plain code (decisions.py) over a mapping: a dict in tests, a faust Table
(changelog-backed) in the service (app.py). docs/review.md describes the whole workflow.
"""
