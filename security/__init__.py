"""Who may speak and who may see (issue 7): API keys and roles, MQTT credentials and ACLs; owns
the security tables (`models`)."""
