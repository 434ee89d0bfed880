return { items = {} }
