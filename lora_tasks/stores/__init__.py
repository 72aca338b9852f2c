"""Where bytes live: file:// and s3:// stores, and the immutable, manifest-last layout of published
adapter versions. May import: core."""
