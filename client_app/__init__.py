"""The hospital side: site agent, ClientApp shim, local training, the site store and CLI."""
