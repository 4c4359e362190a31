"""The site store: creating and opening the site folder (laid out by common.workdir), the SQL
store (approvals, ledger, events, settings), its tables and migrations, and the agent's
last-task record."""
