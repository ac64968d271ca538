"""common-messaging queue providers of this provider."""
