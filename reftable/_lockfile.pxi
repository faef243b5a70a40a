# Lock files: filled in separately.
