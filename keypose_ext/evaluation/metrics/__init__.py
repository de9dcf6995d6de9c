# Each import below registers one component (one per file).
