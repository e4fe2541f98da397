"""What the user wrote: the catalog, the profiles, the project and the registry setting, typed and checked."""
