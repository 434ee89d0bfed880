return { handle = function() end }
