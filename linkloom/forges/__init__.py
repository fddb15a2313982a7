"""Pull requests on the team's git host are proposals (GitHub, GitLab, Gitea/Forgejo).

``events`` verifies and reads each forge's webhooks; ``clients`` reports back (a commit status
named ``linkloom`` and one pull request comment edited in place); ``report`` composes what is
reported; ``service.ForgeService`` turns deliveries into proposal actions and keeps the reports
going with retries. Key contracts: a delivery is verified before anything is read and handled
once; a forge that is down never blocks the checks (reports retry with backoff); nothing is
written to the remote here (promotions and rollbacks push through ``proposals.mirroring``).
"""
