"""The site store: the site folder's layout, the SQL store (approvals, ledger, events,
settings), its tables and migrations, and the agent's last-task record."""
