"""Running scenarios and analysing them: results tables, attribution, sweeps, portfolio decisions."""
