"""Plugin-facing core: the interfaces other hither packages implement, the entry-point registry, container runner choice, process lifetime."""
