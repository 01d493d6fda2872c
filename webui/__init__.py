"""The Gradio front end: thin tabs over `cnet` and `annotators`. `service` holds the glue and never imports gradio."""
