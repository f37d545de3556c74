"""Mailchimp Marketing API 3.0: one audience (list) per connection side."""
