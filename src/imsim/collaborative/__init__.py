"""The agent-based model of a state-teams collaborative, which produces coverage over time."""
