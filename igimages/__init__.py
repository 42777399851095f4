"""Download every image of a file of scraped social-media posts."""
