"""Operating Echo: the doctor's checks of a machine and a config, and the deployment zip.
Never imports the HTTP layer."""
