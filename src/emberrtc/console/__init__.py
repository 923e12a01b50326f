"""The web console at ``/console``: what a tenant does with the API, in server-rendered pages.

``routes`` (pages and actions, through the same domain services as the v2 API), ``session`` (sign-in
cookie, CSRF), ``forms`` (HTML forms checked by the API's request models), ``charts`` (SVG drawn by the
server), ``pages`` (templates and security headers); ``templates/`` and ``static/`` ship in the package.
"""
