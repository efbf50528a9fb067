"""Pure rules of cxloop: message validation, identity, traits. Imports nothing of ours."""
