"""The networks the stages build (an `nn.Module` each): the MVDream UNet of stages 1 and 2.

Where their weights come from (the model table, the offline hub-cache look-up) is `congeal.weights`.
"""
