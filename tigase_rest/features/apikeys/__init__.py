"""API keys managed like Tigase's ApiKeyRepository: the ``api-key-add``, ``api-key-update``,
``api-key-remove`` and ``api-key-list`` ad-hoc commands on the component's JID, for admins; the keys
they add are kept in SQLite under ``[storage] data_dir`` and checked beside the config's keys."""
