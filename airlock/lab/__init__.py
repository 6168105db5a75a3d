"""The disposable local lab: real systemd hosts in network namespaces (see DESIGN.md, "The local lab")."""
