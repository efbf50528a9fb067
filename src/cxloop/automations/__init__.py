"""Automations and integrations: rules that act on the journey (``rules`` saves them,
``firing`` notices their triggers, ``running`` runs their actions through the job queue),
message templates (``templates``), the customer as rules see them (``context``), outgoing
webhooks (``webhooks``) and staff profiles (``staff``)."""
