"""Bridges from model libraries to Tessera's kernels.

    import tessera.integrations.transformers as tessera_hf
    tessera_hf.register()        # attn_implementation="tessera" in Hugging Face transformers

Each bridge imports its library only when used: the package itself depends on
none of them (docs/python.md, "Hugging Face transformers").
"""
