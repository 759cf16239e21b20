"""One trainer for every vocalis model (single process or torchrun)."""
