# Placeholder for embedding files (SQL migrations, OpenAPI document) into the binary.
