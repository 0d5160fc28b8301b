"""Framework-level acceleration, independent of chatbots (never imports ``alime``)."""
