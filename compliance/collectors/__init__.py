"""Collectors: each reads one live system (AWS, hosts, Pulumi state, registry, audit) into JSON facts."""
