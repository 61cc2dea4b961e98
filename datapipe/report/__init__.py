"""Pictures and pages for people: display rendering, previews, the HTML report."""
