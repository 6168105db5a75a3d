"""Disaster-recovery drills (seed 4.5: "documented recovery procedures with measured RTO/RPO")."""
