"""After deployment: the payload log (what was asked and answered), and what is computed from it."""
