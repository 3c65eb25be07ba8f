"""Members: the wider user base, candidate ranking, invitations and the KOC roster."""
