"""Change control: a planned change, its affected documents and job functions, tasks, and closure gated on training."""
