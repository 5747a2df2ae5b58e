"""Problems: tasks on deepinv physics, image spaces, metrics, datasets, image files and pinned files."""
