"""The sync stage: send the images to S3 (or a local folder) and write the markers."""
