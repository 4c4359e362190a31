"""The site agent: the one process that touches a site's data, keys and ledger on behalf of a
study. It admits tasks, runs them (statistics, training, evaluation, release) and answers with
signed envelopes; its local gRPC service is how the ClientApp shim reaches it."""
