"""Creative kits: material and shooting notes handed to KOCs through object storage."""
