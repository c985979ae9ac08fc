"""Names the dead-code check (vulture, ``[tool.vulture]`` in pyproject.toml) cannot see used.

Each line uses one name, with why it stays although nothing in the tree reads it. A name
added here needs that reason; anything else vulture reports is removed instead.
"""
# ruff: noqa: B018, F821

_.OK  # ExitCode.OK (both programs): status 0, named in the table beside the failures
_.deprecated  # ur.registry.RegistryType.deprecated: which UR types BCR-2020-006 retired
_.softhsm_state  # a fixture the hsm fixture depends on for its side effect (the token store)
_.appliance_state  # tests/audit RealEvidence: where the run's station lives, for debugging
_.halted  # tests/image BootResult: whether the guest halted, shown in a failure's repr
_.prop  # the fake capture's get(prop): OpenCV's own parameter name
_.authorised_by  # station.WalletPin: journaled, and serialised by to_plain through fields()
_.signing_keys  # profiles.ModuleProfile: read by name through require("signing_keys", ...)
_.wrap_unwrap  # profiles.ModuleProfile: read by name through require("wrap_unwrap", ...)
_.raw_signatures  # profiles.ModuleProfile: a module's documented quirk (docs/hardware.md);
# every profiled module returns raw r||s, and approve() refuses anything else by its length
_.session_objects  # profiles.ModuleProfile: documented capability; no ceremony needs it yet
_.show_command_palette  # textual Footer reactive: KeysFooter hides ^p below 120 columns
_.binary_location  # selenium ChromeOptions: read by the driver (tests/browser.py)
_.orientation  # selenium PrintOptions: read by print_page (tests/audit/test_report_browser.py)
_.should_exit  # uvicorn.Server: the flag its run loop polls to stop (tests/coordinator web tests)
_.redirect_request  # urllib HTTPRedirectHandler protocol: monitor._NoRedirect refuses redirects
