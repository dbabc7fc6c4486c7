"""Experiment configs shipped with mer (YAML); `mer demo` reads demo.yaml from here."""
