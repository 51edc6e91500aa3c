"""One run's lifecycle: recipes and typed config, output folder, logging, checkpoints, seeding."""
