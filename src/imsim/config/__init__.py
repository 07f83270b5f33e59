"""Input files (scenarios, sweeps, plans), validated strictly by one mechanism."""
