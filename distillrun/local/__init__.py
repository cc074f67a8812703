"""Running a DistillRun on one machine: `distillrun run <manifest>`."""
