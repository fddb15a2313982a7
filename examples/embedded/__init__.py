"""An existing small service (orders, aiohttp + its own SQLAlchemy table) that embeds Link Loom."""
