"""The chat page: one HTML file (``chat.html``, inline CSS and JavaScript, nothing fetched from
anywhere else) that talks to the agent's ``POST /process`` and ``POST /process/stop``, and
:mod:`.adapter`, the front-end that serves it at ``/ui``.

An app serves the page only when asked (``AGENTPACK_UI=1``, which ``run(web_ui=True)``,
``agentpack run --ui`` and ``agentpack emulate --ui`` set), or when
:class:`~agentpack.frontends.ui.adapter.ChatPageAdapter` is listed in ``protocol_adapters``.
Nothing here is imported otherwise, and artifacts leave this package out unless their build
asks for it (``agentpack build --ui`` or ``ui = true`` in agentpack.toml).
"""

#: The page's file, next to this module.
PAGE_FILE = "chat.html"
