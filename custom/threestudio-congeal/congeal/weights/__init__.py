"""Where model weights come from: the model table our configs name, and the offline hub-cache look-up."""
