"""The coordinator side: ServerApp, encrypted FedAvg, model registry and coordinator CLI."""
