"""The HTTPS API: Fooocus-API and AUTOMATIC1111 compatible endpoints over the engine and queue."""
