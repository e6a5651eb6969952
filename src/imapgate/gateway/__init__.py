"""The gateway's services: one write path for every change (authorize, check
conflicts, apply upstream, then replica + journal in one transaction, then
events), content fetches through the cache, and the composition of all parts
from the configuration.  Used by the IMAP server and the dashboard alike."""
