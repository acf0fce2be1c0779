"""The negotiator process shell: sandbox entry, seccomp/Landlock, the trio loop around the core."""
