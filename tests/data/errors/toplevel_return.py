from aotflax import nn, aot

for i in range(3):
    pass
break  # E: AOT100 'break' outside loop
